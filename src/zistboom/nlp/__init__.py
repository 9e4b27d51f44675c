"""zistboom.nlp"""
