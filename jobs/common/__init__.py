"""What several jobs share: the command line, recipe loading, Ray start, checks, progress, processes and
the LLM generation loop. It imports no job."""
