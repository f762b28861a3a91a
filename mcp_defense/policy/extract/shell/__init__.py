"""Shell command lines: lexer, per-program knowledge and analysis."""
