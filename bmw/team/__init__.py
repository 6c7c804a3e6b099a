"""Team use: checks that keep a shared DVC remote, shared experiments and queued runs working (`bmw doctor`)."""
