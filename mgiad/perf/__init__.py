"""Performance: ``mgiad bench`` (speed and memory side by side) and the CPU allocator setting."""
