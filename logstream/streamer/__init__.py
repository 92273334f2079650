"""The Streamer role: validates, writes and rotates log files; serves LogStreamer, Pinger, StreamerControl."""
