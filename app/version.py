API_NAME = "AIPython Agent API"
VERSION = "1.0.0"
