"""Jobs run beside the server, from the command line: bulk pre-annotation of a corpus with the served model
(`annotate`, local or on Ray) and the setup check (`doctor`). Imports the packages below it."""
