from controller.cli.main import app

app(prog_name="python -m controller")
