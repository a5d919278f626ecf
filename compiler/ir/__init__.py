"""The IR: the graph of one block instance (`graph`), its textual form (`printer`, `parser`)."""
