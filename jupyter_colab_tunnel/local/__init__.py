"""The local side: what runs on the user's machine (the relay). Never imports the extension."""
