"""Apple Business Manager as the simulator needs it: organisation, devices, servers, tokens, assignment."""
