"""The language front end: the syntax tree (`tree`), parsing (`parse`), loading a file and its
imports (`program`), and elaboration into the typed IR (`elaborate`)."""
