"""The paper's experiments as an application of the kernel library: its models (models), data
sets (data) and streaming shards (shards, minibatches), the training loop (train) with its run
files and data-parallel ranks (run_files, distributed), evaluation (evaluate), figures and the
`aevb-fast` command line (cli). It uses the library through `aevb_fast`'s public names only; the
library never imports it. Its extra dependencies come with `pip install aevb-fast[experiments]`."""
