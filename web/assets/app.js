// placeholder until the UI lands
