from sigma_cli.main import run

run()
