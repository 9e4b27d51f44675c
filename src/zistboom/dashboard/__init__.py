"""zistboom.dashboard"""
