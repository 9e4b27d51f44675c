"""zistboom.exchange_log"""
