"""Peers we compare with: consumers written the way their users write them."""
