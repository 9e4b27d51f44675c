"""zistboom.monitoring"""
