"""heatup's configuration: the settings object (``settings``), its sections (``sections``), and
the file and sources it is read from (``file``)."""
