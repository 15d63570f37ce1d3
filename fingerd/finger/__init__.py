"""What a finger query is answered with: the grammar, the sources, the output."""
