from contestkit.cli import main

main()
