"""One module per ``yolo`` subcommand: ``add_parser(sub)`` declares it and sets the function that runs it
as the parser's ``run`` default. Heavy modules are imported inside the functions so ``yolo --help`` stays instant."""
