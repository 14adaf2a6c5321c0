"""Reading and writing a user's files: images, data YAMLs, sources (files, videos, live streams), run folders and saved results, atomic writes, bounded reading, safe YAML."""
