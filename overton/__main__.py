from overton.cli import run

run()
