"""One thin script per DVC stage: read params, call squad_ft, write outputs."""
