"""zistboom.gateway"""
