"""securepy"""
