"""Sales reports (seeds 000, 002, 003, 004): the figures, their glossary, the text summary."""
