"""One module per CLI subcommand (see yolo_sfn.cli)."""
