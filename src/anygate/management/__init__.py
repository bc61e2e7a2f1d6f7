"""What the management API and the CLI share: request models, validation that names the field, the rules a
provider must pass to be stored, and what a key may do to keys."""
