// chatd web client
