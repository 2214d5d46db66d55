# MEP protocol core: pure code, no machine, network or socket imports.
