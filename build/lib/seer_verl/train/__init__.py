"""Training-side tools: `seer-verl compare` (stock verl vs Seer inside verl's own trainer)."""
