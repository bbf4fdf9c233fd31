"""ADAGE: automatic deployment of distributed applications."""
