"""The data side: synthetic default data, datalists (pairing, checks, subject-grouped splits), image writers."""
