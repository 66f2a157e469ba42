"""The Redis store: transport (lists + Lua), results, coordination; keys.py names every key."""
