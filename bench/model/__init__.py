"""`bmw bench`: the project's training and evaluation paths timed at a given shape, beside plain TRL defaults."""
