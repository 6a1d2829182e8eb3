"""What each API looks like on the wire: formats, error bodies, usage and stream parsing."""
