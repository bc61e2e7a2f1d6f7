from anygate.cli import main

main()
