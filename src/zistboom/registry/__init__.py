"""zistboom.registry"""
