"""Plot conventions shared by every layer (no matplotlib import here)."""

# One colour per column class, in class order: markers, Atomap sublattices,
# report figures.
COLORS = ["red", "blue", "green", "orange", "purple", "cyan"]
