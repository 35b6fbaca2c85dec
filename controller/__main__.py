from controller.cli import app

app(prog_name="python -m controller")
