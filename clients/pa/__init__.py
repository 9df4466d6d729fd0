"""PA Media election XML into seatcast stream events."""
