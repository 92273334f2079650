"""The rules both roles apply to what clients name: file keys and paths, chunks of whole lines, rotated names."""
