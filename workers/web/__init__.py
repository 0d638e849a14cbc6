"""`sfsync web`: the server-rendered support console (overview, dead letters, replay, audit)."""
