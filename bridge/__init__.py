"""Code both sides need: the controller imports it, and Hummingbot gets it mounted beside the script.

Standard library plus what the official Hummingbot image ships (requests, pydantic), nothing else.
"""
