"""peerdesk engine: platform adapters, detection, pipeline, store, outbox, runner and CLI."""
