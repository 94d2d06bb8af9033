"""One module per `lorat` verb: ``add_arguments(parser)`` and ``run(args) -> int``. Keep them thin."""
