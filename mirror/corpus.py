"""The vocabulary and sentence templates of the mirror's press releases (written for this project).

Templates are `str.format` strings over the slot names that `content.py` fills per article. Sentences avoid
the words that the PDF boilerplate uses at line starts (header, contact, disclaimer), so every body sentence
can survive a cleaner that removes that boilerplate.
"""

from __future__ import annotations

# name, powertrain (ev | phev | ice), combined consumption figures for the disclaimer lines
MODELS: tuple[tuple[str, str, str], ...] = (
    ("BMW iX3", "ev", "Power consumption combined: 17.9-15.1 kWh/100 km"),
    ("BMW i4 Gran Coupe", "ev", "Power consumption combined: 18.8-15.9 kWh/100 km"),
    ("BMW i5 Touring", "ev", "Power consumption combined: 19.9-16.6 kWh/100 km"),
    ("BMW i7", "ev", "Power consumption combined: 21.5-18.4 kWh/100 km"),
    ("BMW iX1", "ev", "Power consumption combined: 17.3-14.4 kWh/100 km"),
    ("BMW iX", "ev", "Power consumption combined: 21.9-17.2 kWh/100 km"),
    ("BMW 5 Series Sedan", "ice", "Fuel consumption combined: 7.1-5.3 l/100 km"),
    ("BMW 3 Series Touring", "ice", "Fuel consumption combined: 6.9-4.9 l/100 km"),
    ("BMW X3", "ice", "Fuel consumption combined: 7.9-5.6 l/100 km"),
    ("BMW X5 xDrive50e", "phev", "Fuel consumption combined: 1.2-0.9 l/100 km"),
    ("BMW 1 Series", "ice", "Fuel consumption combined: 6.8-4.4 l/100 km"),
    ("BMW X7", "ice", "Fuel consumption combined: 12.4-8.1 l/100 km"),
    ("BMW M5", "phev", "Fuel consumption combined: 1.8-1.6 l/100 km"),
    ("BMW M3 Touring", "ice", "Fuel consumption combined: 10.4-10.2 l/100 km"),
    ("BMW M2", "ice", "Fuel consumption combined: 10.2-9.6 l/100 km"),
    ("MINI Cooper E", "ev", "Power consumption combined: 14.3-13.8 kWh/100 km"),
    ("MINI Aceman", "ev", "Power consumption combined: 15.4-14.0 kWh/100 km"),
    ("MINI Countryman C", "ice", "Fuel consumption combined: 6.8-6.3 l/100 km"),
    ("Rolls-Royce Spectre", "ev", "Power consumption combined: 23.6-22.2 kWh/100 km"),
    ("Rolls-Royce Cullinan", "ice", "Fuel consumption combined: 15.7-15.0 l/100 km"),
)

# base price in thousands of euros, the lower end of a model's range in the German market
MODEL_PRICES = {
    "BMW iX3": 68, "BMW i4 Gran Coupe": 57, "BMW i5 Touring": 73, "BMW i7": 118, "BMW iX1": 48, "BMW iX": 83,
    "BMW 5 Series Sedan": 58, "BMW 3 Series Touring": 49, "BMW X3": 55, "BMW X5 xDrive50e": 95, "BMW 1 Series": 36,
    "BMW X7": 108, "BMW M5": 143, "BMW M3 Touring": 99, "BMW M2": 74, "MINI Cooper E": 32, "MINI Aceman": 35,
    "MINI Countryman C": 38, "Rolls-Royce Spectre": 420, "Rolls-Royce Cullinan": 390,
}

# second disclaimer line for plug-in hybrids (electric share of the weighted combined cycle)
PHEV_POWER = "Power consumption combined: 24.1-21.3 kWh/100 km"
PHEV_CO2 = "CO2 emissions combined: 28-20 g/km"
ICE_CO2 = {
    "BMW 5 Series Sedan": "CO2 emissions combined: 161-139 g/km",
    "BMW 3 Series Touring": "CO2 emissions combined: 156-128 g/km",
    "BMW X3": "CO2 emissions combined: 179-147 g/km",
    "BMW 1 Series": "CO2 emissions combined: 154-116 g/km",
    "BMW X7": "CO2 emissions combined: 281-212 g/km",
    "BMW M3 Touring": "CO2 emissions combined: 237-232 g/km",
    "BMW M2": "CO2 emissions combined: 232-218 g/km",
    "MINI Countryman C": "CO2 emissions combined: 154-143 g/km",
    "Rolls-Royce Cullinan": "CO2 emissions combined: 356-341 g/km",
}
EV_CO2 = "CO2 emissions combined: 0 g/km"

MOTORCYCLES: tuple[tuple[str, str, str], ...] = (
    ("BMW R 1300 GS", "Fuel consumption combined: 4.8 l/100 km", "CO2 emissions combined: 111 g/km"),
    ("BMW S 1000 RR", "Fuel consumption combined: 6.4 l/100 km", "CO2 emissions combined: 149 g/km"),
    ("BMW R 18 Transcontinental", "Fuel consumption combined: 5.7 l/100 km", "CO2 emissions combined: 132 g/km"),
    ("BMW F 900 XR", "Fuel consumption combined: 4.5 l/100 km", "CO2 emissions combined: 104 g/km"),
)

# city, country, what the site builds
PLANTS: tuple[tuple[str, str, str], ...] = (
    ("Munich", "Germany", "the BMW 3 Series and the BMW i4"),
    ("Dingolfing", "Germany", "the BMW 5 Series, the BMW 7 Series and electric drive components"),
    ("Regensburg", "Germany", "the BMW X1 and high-voltage battery modules"),
    ("Leipzig", "Germany", "the BMW 1 Series, the MINI Countryman and battery modules"),
    ("Spartanburg", "the United States", "the large BMW X models"),
    ("Debrecen", "Hungary", "the first models of the Neue Klasse"),
    ("Shenyang", "China", "the BMW 5 Series long-wheelbase and the BMW iX3"),
    ("San Luis Potosi", "Mexico", "the BMW 2 Series Coupe and the BMW 3 Series"),
    ("Oxford", "the United Kingdom", "MINI models"),
    ("Steyr", "Austria", "engines and electric drive units"),
    ("Landshut", "Germany", "lightweight structures, castings and cockpits"),
    ("Rosslyn", "South Africa", "the BMW X3"),
    ("Araquari", "Brazil", "the BMW X1 and the BMW 3 Series"),
    ("Chennai", "India", "locally assembled BMW and MINI models"),
)

VEHICLE_PLANTS = tuple(p[0] for p in PLANTS if p[0] not in ("Steyr", "Landshut", "Chennai"))
NEUE_KLASSE_PLANTS = ("Debrecen", "Munich", "Shenyang")

MARKETS = ("China", "the United States", "Germany", "the United Kingdom", "Japan", "South Korea", "France",
           "Italy", "Spain", "Canada", "Australia", "India", "Brazil", "the Netherlands", "Sweden", "Norway")

RACES = ("24 Hours of Le Mans", "12 Hours of Sebring", "24 Hours of Daytona", "6 Hours of Spa-Francorchamps",
         "6 Hours of Fuji", "8 Hours of Bahrain", "Nuerburgring 24 Hours", "Petit Le Mans at Road Atlanta",
         "DTM round at the Norisring", "DTM finale at Hockenheim", "6 Hours of Imola", "Detroit Sports Car Classic")
SERIES = ("FIA World Endurance Championship (WEC)", "IMSA WeatherTech SportsCar Championship", "DTM",
          "Intercontinental GT Challenge", "GT World Challenge Europe")
RACE_CARS = ("BMW M Hybrid V8", "BMW M4 GT3 EVO", "BMW M4 GT4 EVO")
TEAMS = ("BMW M Team WRT", "BMW M Team RLL", "Schubert Motorsport", "ROWE Racing", "Team Project 1",
         "Paul Miller Racing", "Walkenhorst Motorsport")

FIRST_NAMES = ("Anna", "Markus", "Laura", "Tobias", "Sophie", "Daniel", "Julia", "Florian", "Hannah", "Stefan",
               "Clara", "Matthias", "Lena", "Jonas", "Miriam", "Felix", "Katrin", "Andreas", "Elena", "Peter",
               "Nora", "Sebastian", "Ines", "Maximilian", "Teresa", "Oliver", "Sarah", "Lukas", "Vera", "David")
LAST_NAMES = ("Berger", "Hartmann", "Vogel", "Lindner", "Albrecht", "Kessler", "Brandt", "Winter", "Seidel",
              "Hofmann", "Krause", "Lorenz", "Roth", "Haas", "Engel", "Sommer", "Franke", "Graf", "Weiss", "Busch",
              "Pohl", "Stein", "Ziegler", "Kuhn", "Marx", "Brenner", "Keller", "Fuchs", "Adler", "Ostermann")
DRIVER_NAMES = ("Jan Ostrander", "Luca Ferrandi", "Nils Arvidsson", "Tom Callaghan", "Kevin Delacroix",
                "Marco Vettorelli", "Ryan Whitfield", "Sven Lindqvist", "Pieter de Waal", "Joao Almeida Costa",
                "Max Renner", "Dries Vanthoor-Lemaire")
BOARD_ROLES = ("Member of the Board of Management responsible for Production",
               "Member of the Board of Management responsible for Development",
               "Member of the Board of Management responsible for Purchasing and Supplier Network",
               "Member of the Board of Management responsible for Customer, Brands and Sales",
               "Member of the Board of Management responsible for Finance",
               "Member of the Board of Management responsible for People and Real Estate")
MANAGER_ROLES = ("head of the plant", "head of BMW M", "head of BMW Motorsport", "head of MINI",
                 "head of product line Neue Klasse", "head of sustainability", "head of sales Europe",
                 "head of battery cell competence")
CONTACT_ROLES = ("Spokesperson Product Communications BMW", "Spokesperson BMW i and Neue Klasse",
                 "Spokesperson Production Network", "Spokesperson Sales and Marketing",
                 "Spokesperson BMW M Motorsport", "Spokesperson Finance and Economics",
                 "Spokesperson Sustainability", "Spokesperson MINI", "Spokesperson BMW Motorrad",
                 "Head of Corporate and Financial Communications")

COLOURS = ("Alpine White", "Black Sapphire", "Brooklyn Grey", "Portimao Blue", "Frozen Deep Grey", "Cape York Green",
           "Fire Red", "Arctic Race Blue")
QUARTERS = ("first quarter", "second quarter", "third quarter", "fourth quarter")
POSITIONS = ("first", "second", "third", "fourth", "fifth", "sixth")

# Title templates per category; each category also has its body sentence pool.
TITLES: dict[str, tuple[str, ...]] = {
    "model": (
        "World premiere of the new {model} in {market}",
        "The new {model}: more range, more comfort, more character",
        "{model} now available to order in {market}",
        "Market launch of the {model}: first customers take delivery in {city}",
        "The {model} sets a new benchmark in its segment",
        "Updated {model} arrives with a wider range of equipment",
        "{model} celebrates its dealer debut in {market}",
        "Extended test drive programme for the {model} in {market}",
    ),
    "motorcycle": (
        "BMW Motorrad presents the new {bike}",
        "The {bike}: more power and new riding modes",
        "{bike} goes on sale in {market}",
        "BMW Motorrad delivers {moto_units} motorcycles in the {quarter} of {year}",
    ),
    "plant": (
        "BMW Group Plant {plant} starts series production of a new model",
        "Plant {plant} invests EUR {eur_m} million in its future",
        "{units2} vehicles in one year: a record for Plant {plant}",
        "Plant {plant} marks a production milestone",
        "New training centre opens at Plant {plant}",
        "Plant {plant} switches its paint shop to green electricity",
    ),
    "motorsport": (
        "{race_car} on the podium at the {race}",
        "{team} takes {position} place at the {race}",
        "Preview: BMW M Motorsport heads to the {race}",
        "{race_car} completes its endurance test ahead of the {race}",
        "BMW M Motorsport announces its driver line-up for the {series_short} season {year}",
        "Strong team result for BMW M Motorsport at the {race}",
    ),
    "sales": (
        "BMW Group deliveries in the {quarter} of {year}: {pct2} per cent electrified",
        "BMW Group sales in {market} grow by {pct3} per cent",
        "MINI and BMW brands report strong {quarter} in {market}",
        "BMW Group delivers {ev_units} fully electric vehicles in the {quarter} of {year}",
        "Record order intake for electrified models in {market}",
    ),
    "finance": (
        "BMW Group reports results for the {quarter} of {year}",
        "BMW Group confirms its outlook for {year}",
        "BMW Group issues bond worth EUR {eur_m} million",
        "Solid free cash flow for the BMW Group in the {quarter} of {year}",
    ),
    "sustainability": (
        "BMW Group expands the use of secondary raw materials",
        "Closed-loop battery recycling reaches {recovery} per cent recovery rate",
        "BMW Group signs supply contract for low-carbon steel with a partner in {market}",
        "Plant {plant} now uses {pct} per cent renewable heat",
        "BMW Group publishes its sustainability figures for {prev_year}",
        "Water saving programme at Plant {plant} cuts consumption by {pct} per cent",
    ),
    "neue_klasse": (
        "Neue Klasse: the next step towards series production in {plant}",
        "Sixth-generation eDrive: faster charging and {range_km} km of range",
        "Neue Klasse prototypes complete winter testing near the Arctic Circle",
        "The Neue Klasse software stack: a new operating system for the BMW Group",
        "Battery assembly for the Neue Klasse starts in {plant}",
    ),
    "people": (
        "{person} appointed {manager_role} at BMW Group Plant {plant}",
        "Change in the Board of Management: {person} takes over new duties",
        "{person} to lead BMW Group operations in {market}",
        "BMW Group honours {units_small} apprentices for outstanding results in {plant}",
    ),
    "innovation": (
        "BMW Group opens a new battery cell competence centre in {plant}",
        "Automated driving: BMW Group receives approval in {market}",
        "BMW Panoramic iDrive comes to further model series",
        "BMW Group and a start-up from {market} test new charging technology",
        "Hydrogen fuel cell drive: BMW Group extends its pilot fleet in {market}",
    ),
}

# Subtitles for a title that another release already has (scaled sites only: the bundled one never needs them)
SUBTITLES = (
    "next steps from {date2}",
    "first figures for the {quarter} of {year}",
    "{city} sets the pace",
    "a closer look at {market}",
    "what changes on {date}",
    "an overview for {market} and {market2}",
    "the update of {date}",
    "{pct} per cent more than planned",
)

SENTENCES: dict[str, tuple[str, ...]] = {
    "model": (
        "The new {model} will be [presented to the public|shown to the press|unveiled to dealers] for the first time on {date}.",
        "Customers in {market} can order the {model} from {date} at a base price of EUR {price} including VAT.",
        "The {model} combines [a sporty driving experience|agile handling|dynamic performance] with a [spacious|generous|versatile] interior and {seats} full-size seats.",
        "The {model} offers a luggage compartment volume of {litres} litres, which [can be extended|grows to {litres_max} litres] by folding the rear seat backrests.",
        "With the latest generation of BMW iDrive, the {model} [shows|displays] navigation and driving information directly in the driver's field of view.",
        "Production of the {model} for customers [worldwide|in {market} and Europe] takes place at Plant {plant}.",
        "The exterior of the {model} is characterised by [clear surfaces|precise lines], slim headlights and a newly interpreted kidney grille in {colour}.",
        "A package of {assist_count} driver assistance systems [is fitted as standard|comes as standard] in the {model}.",
        "Compared with its predecessor, the {model} is {mm} millimetres longer and offers [noticeably|significantly] more legroom in the rear.",
        "The interior of the {model} is available [for the first time|now] completely without leather, with seat covers made from {pct_small} per cent recycled fibres.",
        "Over-the-air updates keep the software of the {model} up to date; the first update is planned for {date2}.",
        "According to the company, about {pct} per cent of the pre-orders for the {model} came from customers who are new to the brand.",
        "The {model} is offered in {colours} exterior colours and with wheels of up to {wheel} inches.",
    ),
    "model_ev": (
        "The fully electric {model} achieves a range of up to {range_km} kilometres in the WLTP cycle.",
        "At a fast-charging station, the battery of the {model} can be charged from 10 to 80 per cent in {charge_min} minutes.",
        "The electric motor of the {model} delivers up to {power_kw} kW and [accelerates the car|propels the vehicle] from 0 to 100 km/h in {sprint} seconds.",
        "The high-voltage battery of the {model} has a usable capacity of {kwh} kWh.",
    ),
    "model_ice": (
        "The six-cylinder engine of the {model} delivers {power_kw} kW and is combined with 48-volt mild hybrid technology.",
        "An eight-speed Steptronic transmission comes as standard in every version of the {model}, which reaches 100 km/h in {sprint} seconds.",
        "The engines of the {model} are available with rear-wheel drive or the all-wheel drive system xDrive from {date2}.",
    ),
    "model_phev": (
        "The plug-in hybrid system of the {model} has a system output of {power_kw} kW.",
        "In purely electric mode, the {model} covers up to {range_km_phev} kilometres.",
        "The {model} can charge its battery with up to 11 kW of alternating current in about {charge_hours} hours.",
    ),
    "motorcycle": (
        "The new {bike} will be available at BMW Motorrad dealers from {date}.",
        "The engine of the {bike} delivers {bike_kw} kW and a maximum torque of {torque} Nm.",
        "Riding modes Rain, Road and [Dynamic|Enduro|Dynamic Pro] come as standard on the {bike}.",
        "BMW Motorrad builds the {bike} at its plant in Berlin-Spandau, which [has produced motorcycles since 1969|employs about {spandau_jobs} people].",
        "Compared with its predecessor, the {bike} weighs {kg} kilograms less.",
        "With the optional comfort package, riders of the {bike} receive heated grips and [an adaptive headlight|a tyre pressure monitor].",
        "BMW Motorrad delivered {moto_units} motorcycles and scooters worldwide in the {quarter} of {year}.",
        "The largest single markets for BMW Motorrad were Germany, France and {market}.",
        "The connectivity display of the {bike} [shows|mirrors] navigation instructions from the rider's smartphone.",
        "In the {quarter}, demand for the {bike} in {market} exceeded the forecast by {pct} per cent.",
    ),
    "plant": (
        "Plant {plant} in {country} currently builds {plant_models}.",
        "The site employs around {jobs} people and produced {units2} vehicles [last year|in {prev_year}].",
        "The investment of EUR {eur_m} million covers a new assembly hall, [a logistics centre|a battery assembly line] and {apprentices} additional training places.",
        "Since {date_past}, the plant has been sourcing its electricity entirely from renewable sources.",
        "The new body shop at Plant {plant} uses more than {robots} robots and cuts energy use by {pct} per cent.",
        "Employees at Plant {plant} completed more than {hours} hours of training on electric drive production [this year|since {date_past}].",
        "The plant will build its [one millionth|two millionth|three millionth] vehicle of the current generation on {date}.",
        "Plant {plant} can build [combustion, plug-in hybrid and fully electric vehicles|vehicles with all types of drive] on one line.",
        "Around {pct} per cent of the vehicles built in {plant} are exported to more than {countries} countries.",
        "The logistics centre at the site handles about {trucks} truck deliveries every working day.",
        "The paint shop at Plant {plant} is being converted so that it can run without natural gas from {year_next}.",
        "A new apprenticeship programme at the plant trains {apprentices} young people each year in {trades} different trades.",
    ),
    "motorsport": (
        "The {race_car} of {team} crossed the finish line in {position} place after {laps} laps.",
        "{driver} set the fastest lap of the race in the {race_car} with a time of {laptime}.",
        "With this result, {team} moves up to {position} place in the team standings of the {series}.",
        "The next round of the {series} takes place on {date}.",
        "The {race_car} [completed|covered] more than {km} kilometres in testing before the season started.",
        "{driver} and {driver2} shared the cockpit of the {race_car} and spent more than {hours_small} hours on track.",
        "The team changed tyres {stops} times and [lost no time|gained {seconds} seconds] in the pit lane.",
        "Around {spectators} spectators followed the race at the circuit.",
        "The {race_car} started from {position2} place on the grid.",
        "BMW M Motorsport will enter {cars} cars in the {series} next season.",
        "[Changing weather conditions|A safety car phase after {hours_small} hours|Rain in the final hour] made the choice of tyres a decisive factor.",
    ),
    "sales": (
        "In the {quarter} of {year}, the BMW Group delivered {group_units_q} vehicles to customers worldwide.",
        "Sales of fully electric vehicles rose by {pct} per cent compared with the same period of the previous year.",
        "Electrified vehicles accounted for {pct2} per cent of all deliveries in the period.",
        "The BMW brand delivered {brand_units} vehicles, while MINI delivered {units3} vehicles.",
        "Rolls-Royce Motor Cars handed over {rr_units} vehicles to customers in the period.",
        "In {market}, sales grew by {pct3} per cent to {units4} vehicles.",
        "The {model} was once again the best-selling [electrified|new] model of the company in {market}.",
        "BMW M GmbH delivered {m_units} vehicles, more than in any previous {quarter}.",
        "The company [confirmed|reiterated] that it expects a solid increase in deliveries for the full year {year}.",
        "Order intake for electrified models in Europe [remained high|rose by {pct_small} per cent] at the end of the {quarter}.",
        "Demand for plug-in hybrid models in {market} increased by {pct3} per cent.",
    ),
    "finance": (
        "Group revenues in the {quarter} of {year} amounted to EUR {eur_bn} billion.",
        "The EBIT margin in the Automotive segment was {margin} per cent in the period.",
        "Free cash flow in the Automotive segment reached EUR {eur_m} million.",
        "Research and development expenditure rose to EUR {rnd_bn} billion, mainly because of the Neue Klasse.",
        "The Financial Services segment signed {contracts} new contracts with retail customers.",
        "Group profit before tax came to EUR {pbt_bn} billion.",
        "The company expects the EBIT margin for the Automotive segment for the full year to lie between {margin_low} and {margin_high} per cent.",
        "Investments in property, plant and equipment amounted to EUR {capex_bn} billion in the period.",
        "The bond has a term of {term} years and a coupon of {coupon} per cent.",
        "Higher costs for raw materials [were partly compensated|were largely offset] by a better product mix in {market}.",
    ),
    "sustainability": (
        "The company aims to reduce carbon emissions per vehicle over the entire life cycle by at least {pct} per cent by 2030.",
        "Vehicles of the next generation will contain up to {pct2} per cent secondary raw materials.",
        "In {prev_year}, the BMW Group cut the carbon footprint of its production network by {pct3} per cent.",
        "The new contract covers about {tonnes} tonnes of low-carbon steel per year from {year_next}.",
        "High-voltage batteries from development vehicles are dismantled near {plant}, and {recovery} per cent of their raw materials are recovered.",
        "The plants of the BMW Group have [purchased|sourced] their electricity entirely from renewable sources since {green_year}.",
        "Water consumption per vehicle produced fell to {water} cubic metres.",
        "By using recycled aluminium for wheels, the company saves about {tonnes_co2} tonnes of carbon dioxide each year.",
        "Suppliers must commit to using green electricity when they produce battery cells for the {model_ev}.",
        "The company reports its sustainability figures for {prev_year} in line with the European reporting standards.",
        "A pilot project in {market} tests the return of used batteries from {fleet} customer vehicles.",
    ),
    "neue_klasse": (
        "The Neue Klasse is the basis for a new generation of fully electric models from {year_next} onwards.",
        "The sixth generation of BMW eDrive increases efficiency by {pct} per cent compared with the previous generation.",
        "Thanks to 800-volt technology, the battery can be charged with up to {charge_kw} kW, adding {charge_add} kilometres of range in ten minutes.",
        "Round lithium-ion cells with a diameter of 46 millimetres raise the energy density by more than {pct2} per cent.",
        "Series production of the first model of the Neue Klasse starts at Plant {plant} on {date}.",
        "The prototypes covered more than {km} kilometres in snow and ice [during testing|near the Arctic Circle].",
        "[Four|Several] high-performance computers control driving dynamics, automated driving, infotainment and comfort functions.",
        "The new BMW iX3 is the first production model based on the Neue Klasse and reaches a range of up to {range_km} kilometres.",
        "The company is investing EUR {eur_m} million in the battery assembly at Plant {plant}.",
        "The Panoramic iDrive projects information across the entire width of the windscreen of the {model}.",
        "The Neue Klasse reduces the carbon footprint of the vehicle over its life cycle by about {pct3} per cent.",
    ),
    "people": (
        "{person} has been appointed {manager_role} with effect from {date}.",
        "{person} joined the BMW Group in {join_year} as a trainee and has since held several management positions.",
        "Most recently, {person} was responsible for the production network in {market}.",
        "{person} succeeds {person2}, who is moving to a new position within the company.",
        "The Supervisory Board of BMW AG took the decision at its meeting on {date_past}.",
        "{person} studied [mechanical engineering|industrial engineering|business administration] and [holds a doctorate in production technology|worked in {market} for {years} years].",
        "The new appointment strengthens the team for the ramp-up of the Neue Klasse at Plant {plant}.",
        "The {units_small} apprentices completed their training, {honours} of them with distinction.",
        "{person2} thanked {person} for the close cooperation in recent years.",
        "In the new role, {person} will be responsible for around {jobs} employees.",
    ),
    "innovation": (
        "The new centre in {plant} brings together around {jobs} specialists for cell chemistry and production.",
        "The approval allows the system to drive at speeds of up to {speed} km/h without the driver's hands on the wheel.",
        "The BMW Group has invested EUR {eur_m} million in the new research facility.",
        "Pilot customers in {market} have driven more than {km} kilometres with the new system.",
        "The software was developed in-house [and can be updated over the air|by a team of {jobs_small} engineers].",
        "The partnership with a start-up from {market} focuses on bidirectional charging.",
        "With bidirectional charging, the vehicle battery can return electricity to the home or the grid [for up to {hours_small} hours|during peak hours].",
        "The hydrogen pilot fleet has covered more than {km} kilometres on public roads.",
        "The test phase in {market} starts on {date} and will last {months} months.",
        "The company holds more than {patents} patents in the field of electric mobility.",
    ),
    "general": (
        "\"{quote}\", said {person}, {role}.",
        "\"We are proud of what our teams [in {plant}|in {market}|around the world] have achieved\", said {person}, {role}.",
        "The BMW Group will [provide further details|publish further figures|present the next steps] on {date2}.",
        "The company expects the positive trend to continue in the {next_quarter}, [not least|above all] in {market}.",
        "Interested customers in {market} can [find further details|arrange a test drive] at their local BMW partner.",
        "The project is part of the company's [long-term strategy|product offensive|investment programme] for {year_next} and beyond.",
        "Across all brands, the company currently offers more than {models_count} electrified models in {countries} countries.",
        "A ceremony with around {guests} guests from politics, business and the local community marked the occasion in {city}.",
        "Sales figures for {market} are preliminary and may change by up to {pct_small} per cent in the annual report.",
        "{person} thanked [all employees|the teams in {plant}|suppliers and partners] for their contribution to the project.",
        "The next milestone is planned for {date2}.",
        "The decision was made after a review lasting {months} months [and involved {jobs_small} experts|together with partners from {market}].",
        "[Further|Additional] information for journalists will follow in {month_next}.",
        "The company sees [strong|growing|steady] demand in {market} and {market2}.",
    ),
}

QUOTES = (
    "This is an important step for our company and for our customers",
    "Our employees have worked hard for this result",
    "We are setting new standards with this project",
    "The figures show that our strategy is working",
    "Customers reward our consistent focus on technology and quality",
    "We will continue on this path with great determination",
    "Electric mobility is now firmly established in all our model series",
    "Our production network is flexible, efficient and sustainable",
)

# The one German-language release (its own prose; the mirror's only `de` article).
GERMAN_TITLE = "BMW Group Werk {plant} startet die Serienproduktion eines neuen Modells"
GERMAN_PARAGRAPHS = (
    "München/{plant}. Im BMW Group Werk {plant} ist am {date_de} die Serienproduktion eines neuen Modells angelaufen. "
    "Die Mitarbeiterinnen und Mitarbeiter haben sich in den vergangenen Monaten intensiv auf den Anlauf vorbereitet.",
    "Das Unternehmen hat rund {eur_m} Millionen Euro in neue Anlagen, Schulungen und die Logistik des Standorts "
    "investiert. Insgesamt arbeiten heute etwa {jobs} Menschen im Werk.",
    "\"Wir sind stolz auf diesen Meilenstein und auf unser Team\", sagte {person} aus der Werkleitung. "
    "Die Fahrzeuge gehen in mehr als {countries} Länder, der größte Teil davon nach Europa und Asien.",
    "Bereits seit mehreren Jahren bezieht der Standort seinen Strom vollständig aus erneuerbaren Quellen. "
    "Bis zum Jahresende sollen im Werk über {units} Fahrzeuge der neuen Baureihe vom Band laufen.",
)
GERMAN_MONTHS = ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
                 "November", "Dezember")

# The company boilerplate paragraph of the PDFs (after a heading line "The BMW Group").
BOILERPLATE = (
    "With its brands BMW, MINI, Rolls-Royce and BMW Motorrad, the BMW Group builds premium cars and motorcycles "
    "and offers financial and mobility services to its customers. Its production network comprises more than 30 "
    "sites in {plant_countries} countries, and its sales network reaches customers in over 140 countries. In "
    "{prev_year}, the company delivered about {group_units} million cars and more than {moto_units} motorcycles, "
    "achieved revenues of EUR {revenue} billion and employed around {employees} people worldwide. Long-term thinking "
    "and responsible action have always shaped the company, which anchors sustainability and resource efficiency "
    "along its entire value chain."
)
FIGURES_NOTE = (
    "The figures for fuel consumption, electric power consumption, CO2 emissions and electric range were "
    "determined with the Worldwide Harmonised Light Vehicles Test Procedure (WLTP) under the applicable European "
    "regulation. Ranges depend on equipment, tyres and optional extras; the stated values refer to the vehicle "
    "specification in {market}. Official guidance on the consumption of new passenger cars is available free of "
    "charge at all sales outlets."
)
