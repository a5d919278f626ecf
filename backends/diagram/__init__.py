"""The diagram backend: neural circuit diagrams and layered graphs of the IR, drawn as SVG (and
PNG/PDF through it), DOT, Mermaid and HTML; `render` is the entry point."""
