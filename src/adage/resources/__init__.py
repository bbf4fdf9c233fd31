"""Where resources come from besides resource documents: OAR jobs and OAR node files."""
