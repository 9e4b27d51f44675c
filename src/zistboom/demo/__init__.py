"""zistboom.demo"""
