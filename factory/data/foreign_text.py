"""Original German, French and Spanish paragraphs for the smoke corpus's non-English pages.

Written for this project (not copied from anywhere), so the language filter has real prose to reject.
"""

GERMAN = [
    "Am frühen Morgen ist der Marktplatz unserer kleinen Stadt noch fast leer. Die Händler bauen ihre Stände "
    "auf, stapeln Äpfel und Kartoffeln in Holzkisten und unterhalten sich leise über das Wetter. Wer jetzt "
    "schon unterwegs ist, bekommt das frischeste Brot und einen Kaffee, der noch richtig heiß ist.",
    "Im Garten hinter dem Haus wachsen in diesem Jahr Bohnen, Tomaten und sehr viele Zucchini. Meine "
    "Großmutter sagt, man solle die Pflanzen am Abend gießen, weil das Wasser dann nicht so schnell "
    "verdunstet. Seitdem ich mich daran halte, sind die Blätter kräftiger und die Ernte ist deutlich besser.",
    "Die Bahnfahrt von Hamburg nach München dauert ungefähr sechs Stunden, wenn alles nach Plan läuft. "
    "Unterwegs sieht man Felder, Wälder und kleine Dörfer mit Kirchtürmen, die aus dem Nebel ragen. Viele "
    "Reisende lesen, schlafen oder arbeiten am Laptop, während draußen die Landschaft vorbeizieht.",
    "Unsere Stadtbibliothek hat vor kurzem ihre Öffnungszeiten verlängert. Jetzt kann man auch am Samstag "
    "bis zum Abend dort lernen, Zeitungen lesen oder einfach in Ruhe sitzen. Besonders die Leseecke für "
    "Kinder ist beliebt, weil dort jeden Mittwoch eine Vorlesestunde mit bekannten Märchen stattfindet.",
    "Wer zum ersten Mal einen Sauerteig ansetzt, braucht vor allem Geduld. Mehl und Wasser werden gemischt "
    "und einige Tage an einem warmen Ort stehen gelassen, bis sich kleine Blasen bilden. Erst dann ist der "
    "Teig kräftig genug, um daraus ein Brot mit knuspriger Kruste und saftiger Krume zu backen.",
    "Im Herbst färben sich die Blätter im Stadtpark gelb, orange und tiefrot. Spaziergänger sammeln "
    "Kastanien, Hunde toben über die Wiesen und auf den Bänken sitzen ältere Menschen in warmen Mänteln. "
    "Es ist die schönste Zeit des Jahres, auch wenn die Tage langsam kürzer und kälter werden.",
]

FRENCH = [
    "Le dimanche matin, le marché du quartier s'anime dès sept heures. Les maraîchers installent leurs "
    "cagettes de poireaux et de carottes, le fromager découpe de grandes meules de comté et les habitants "
    "se saluent en faisant la queue devant la boulangerie, où le pain sort à peine du four.",
    "Pour réussir une soupe à l'oignon, il faut prendre son temps. On fait fondre les oignons émincés dans "
    "du beurre à feu doux pendant près d'une heure, jusqu'à ce qu'ils deviennent dorés et sucrés. Ensuite "
    "seulement, on ajoute le bouillon, puis on gratine le tout avec du pain et du fromage râpé.",
    "Le train de nuit qui relie Paris à la côte méditerranéenne connaît un nouveau succès. Les voyageurs "
    "apprécient de s'endormir dans la capitale et de se réveiller face à la mer. Les couchettes sont "
    "simples mais confortables, et le petit déjeuner servi à l'arrivée est toujours très attendu.",
    "La bibliothèque municipale organise chaque mois un atelier d'écriture ouvert à tous. Les participants "
    "reçoivent un thème, écrivent pendant une demi-heure puis lisent leur texte à voix haute. Personne n'est "
    "jugé, et beaucoup disent que ces soirées leur ont redonné le goût de la lecture et des mots.",
    "Au printemps, les cerisiers du jardin public fleurissent presque tous en même temps. Pendant deux "
    "semaines, les allées se couvrent de pétales roses et les familles viennent pique-niquer sur l'herbe. "
    "Les jardiniers rappellent pourtant qu'il ne faut pas cueillir les branches, même les plus basses.",
    "Mon voisin répare des vélos anciens dans son garage depuis plus de vingt ans. Il connaît chaque modèle, "
    "chaque pièce et chaque défaut, et il refuse presque toujours d'être payé. Selon lui, voir un vieux vélo "
    "rouler de nouveau dans la rue est une récompense bien suffisante pour ses longues soirées de travail.",
]

SPANISH = [
    "Cada sábado por la mañana, la plaza mayor se llena de puestos de fruta, verdura y flores. Los vecinos "
    "pasean sin prisa, prueban las naranjas que ofrecen los vendedores y se detienen a charlar con los "
    "conocidos. Al mediodía, casi todos terminan en alguna terraza tomando un café con churros.",
    "Para preparar una buena tortilla de patatas hace falta paciencia. Las patatas se cortan en láminas "
    "finas y se fríen lentamente en abundante aceite de oliva, junto con la cebolla. Después se mezclan con "
    "los huevos batidos y se cuaja todo en la sartén, dándole la vuelta con ayuda de un plato grande.",
    "El viaje en autobús desde la ciudad hasta el pueblo de mis abuelos dura casi tres horas. La carretera "
    "atraviesa campos de olivos, colinas secas y pequeños pueblos blancos con una iglesia en lo alto. "
    "Siempre llevo un libro, aunque al final paso la mayor parte del tiempo mirando por la ventana.",
    "La biblioteca del barrio ha abierto una sala nueva dedicada a los cómics y a las novelas gráficas. Los "
    "jóvenes acuden por las tardes después del colegio, y los mayores también se animan a descubrir "
    "historias dibujadas. Los bibliotecarios organizan además talleres de dibujo durante las vacaciones.",
    "En verano, el río que cruza el valle baja con poca agua y se forman pozas tranquilas entre las rocas. "
    "Los niños del pueblo pasan allí las tardes enteras, nadando y buscando cangrejos, mientras los adultos "
    "descansan a la sombra de los chopos y preparan la merienda sobre una manta.",
    "Mi hermana aprendió a tocar la guitarra ella sola, viendo vídeos y practicando cada noche. Al principio "
    "solo sabía tres acordes, pero con el tiempo empezó a componer sus propias canciones. Ahora toca los "
    "viernes en un pequeño bar del centro, y el público siempre le pide una canción más.",
]

LANGUAGES = {"de": GERMAN, "fr": FRENCH, "es": SPANISH}
