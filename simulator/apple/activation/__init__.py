"""Apple's activation service: the cloud configuration a device fetches during Setup Assistant, and
the fake Apple device CA that gives every device its identity at manufacture."""
