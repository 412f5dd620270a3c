"""Apple's account service as the Business API meets it (``account.apple.com``): the OAuth 2 token endpoint."""
